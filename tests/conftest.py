import torch

# The suite runs as two pytest-xdist workers on a 2-core machine: one torch thread per worker
# avoids oversubscription (which slows small-tensor tests by an order of magnitude).
torch.set_num_threads(1)
