"""UI screen recordings for user-intent understanding (UI-JEPA): a reader for the "Intent in the Wild" (IIW) /
"Intent in the Tame" (IIT) layout and an embedded generator of synthetic phone screen recordings in that layout.

Modules, each importing only those above it:

- :mod:`~datamodules.ui.screens`: phone screens (:class:`Screen`) drawn with PIL (:class:`ScreenPainter`);
- :mod:`~datamodules.ui.recording`: a scripted recording of screens and actions (:class:`Recording`);
- :mod:`~datamodules.ui.scripts`: the slot vocabulary, one script per intent category, :data:`CATEGORIES`;
- :mod:`~datamodules.ui.reader`: the release layout and its reader (:func:`read_ui_annotations`,
  :class:`UIRecordingDataset`);
- :mod:`~datamodules.ui.synthetic`: the embedded generator (:func:`generate_ui_recordings`; the IIT and IIW
  sets);
- :mod:`~datamodules.ui.datamodule`: :class:`UIRecordingsDataModule` (batch keys and shapes).
"""

from .datamodule import UIRecordingsDataModule
from .reader import SPLITS, UIRecordingDataset, read_ui_annotations, uniform_indices
from .recording import Recording
from .screens import APPS, Screen, ScreenPainter
from .scripts import CATEGORIES, VOCAB, IntentCategory, Script
from .synthetic import SET_DEFAULTS, UI_SETS, generate_ui_recordings, record_intent, split_categories

__all__ = [
    "APPS",
    "CATEGORIES",
    "SET_DEFAULTS",
    "SPLITS",
    "UI_SETS",
    "VOCAB",
    "IntentCategory",
    "Recording",
    "Screen",
    "ScreenPainter",
    "Script",
    "UIRecordingDataset",
    "UIRecordingsDataModule",
    "generate_ui_recordings",
    "read_ui_annotations",
    "record_intent",
    "split_categories",
    "uniform_indices",
]
