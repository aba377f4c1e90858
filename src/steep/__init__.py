"""steep: continued pretraining of open LLMs."""

import logging

__version__ = "0.1.0"

# torchao (train.optimizer: adamw8bit) is imported by transformers and peft whenever it is
# installed; on a CPU wheel it logs a warning for each CUDA kernel library it cannot load and
# torch a deprecation notice for its pytree registrations, in every run. Neither is a
# problem of the run; real errors still show.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
