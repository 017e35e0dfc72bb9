"""Runtime services below the algorithms: collective ops over torch.distributed ranks."""
