"""Dynamic Group Convolution (Su et al., ECCV 2020): a reference reproduction."""

__version__ = "0.1.0"
