"""An independent, head-by-head re-statement of the authors' DGC layer, with THEIR module names.

Written from docs/design.md (not from their code) to check `dgc.runtime.compat`: each head `headconv_<i>` has
fc1, fc2 and its own nn.Conv2d applied to its masked copy of the input; channels are pruned by a
full sort; head outputs are interleaved (channel j*H + i <- head i, channel j).
"""

import torch
from torch import nn


class OfficialHead(nn.Module):
    def __init__(self, c_in, c_out, k, stride, padding, hidden):
        super().__init__()
        self.fc1 = nn.Linear(c_in, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c_in)
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding, bias=False)


class OfficialDGC(nn.Module):
    def __init__(self, c_in, c_out, k, stride=1, padding=0, heads=4, hidden=2):
        super().__init__()
        self.heads = heads
        self.norm = nn.BatchNorm2d(c_in)
        for i in range(heads):
            self.add_module(f"headconv_{i}", OfficialHead(c_in, c_out // heads, k, stride, padding, hidden))
        self.register_buffer("_inactive_channels", torch.zeros(1))

    def forward(self, x):
        x = torch.relu(self.norm(x))
        pooled = x.mean(dim=(2, 3))
        n = int(self._inactive_channels.item())
        outs = []
        for i in range(self.heads):
            head = getattr(self, f"headconv_{i}")
            s = torch.relu(head.fc2(torch.relu(head.fc1(pooled))))
            if n > 0:
                order = s.detach().argsort(dim=1)
                mask = torch.ones_like(s)
                for b in range(s.shape[0]):
                    mask[b, order[b, :n]] = 0
                s = s * mask
            outs.append(head.conv(x * s[:, :, None, None]))
        return torch.stack(outs, dim=2).flatten(1, 2)  # (B, C_out/H, H, h, w) -> interleaved
