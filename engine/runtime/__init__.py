"""Runtime services below the algorithms: collective ops over torch.distributed ranks, the precision "auto"
means, PyTorch's thread count for a block (``threads.torch_threads``)."""
