"""The losses by name: what ``TrainConfig`` and the command line offer (torch-free)."""

ORI_LOSSES = ("softmax", "softmax+triplet", "circle")  # the full model's own loss
COMPAT_LOSSES = ("sfsc", "bct-s", "asym-s", "lce-s")  # a sub-model's compatible loss
KL_VARIANTS = ("paper", "sensoy")  # SFSC's KL term: on α (the paper) or on α̃ (Sensoy et al.)
