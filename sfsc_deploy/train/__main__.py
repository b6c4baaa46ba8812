"""``torchrun --nproc-per-node N -m sfsc_deploy.train [train options]``: the ``sfsc-deploy train``
command in each process torchrun starts (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT are read by
sfsc_deploy.train.distributed)."""

import sys

from sfsc_deploy.cli import main

main(["train", *sys.argv[1:]])
