"""The earlier reports' systems, kept to reproduce them (``experiment=prior/...``): their networks (nets), the
one-image LightningModule (module) and the CIFAR-10-only batches (data)."""
