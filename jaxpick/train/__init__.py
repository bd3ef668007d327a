"""PU training of pickers: the jitted step (:mod:`.step`), test evaluation (:mod:`.evaluate`)
and the loop behind ``jaxpick train`` (:mod:`.loop`)."""

from jaxpick.train.loop import TrainResult, checkpoint_path, initial_picker, train

__all__ = ["TrainResult", "checkpoint_path", "initial_picker", "train"]
