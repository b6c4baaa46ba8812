"""Files: tensor hashes, the header every sfsc-deploy file carries, figures, lazy package namespaces;
and where PyTorch runs (device, mixed precision), which every stage shares."""
