"""Files: tensor hashes, the header every sfsc-deploy file carries, figures, lazy package namespaces."""
