"""Training runtime: the epoch loop, checkpoints, devices, torch.compile,
torchrun, the learning-rate schedule, experiment tracking and the run folders.
"""
