"""UI screen recordings for user-intent understanding (UI-JEPA): a reader for the "Intent in the Wild" (IIW) /
"Intent in the Tame" (IIT) layout and an embedded generator of synthetic phone screen recordings in that layout.

Modules, each importing only those above it:

- :mod:`~datamodules.ui.screens`: phone screens (:class:`Screen`) drawn with PIL (:class:`ScreenPainter`);
- :mod:`~datamodules.ui.recording`: a scripted recording of screens and actions (:class:`Recording`);
- :mod:`~datamodules.ui.scripts`: the slot vocabulary, one script per intent category, :data:`CATEGORIES`;
- :mod:`~datamodules.ui.interact`: the interact set (one app skin, the intent in which element is touched and how
  the screen changes, colour balanced out): :class:`InteractPainter`, :data:`INTERACT_CATEGORIES`,
  :func:`record_interact`;
- :mod:`~datamodules.ui.reader`: the release layout and its reader (:func:`read_ui_annotations`,
  :class:`UIRecordingDataset`);
- :mod:`~datamodules.ui.synthetic`: the embedded generator (:func:`generate_ui_recordings`; the IIT, IIW and
  interact sets);
- :mod:`~datamodules.ui.datamodule`: :class:`UIRecordingsDataModule` (batch keys and shapes).

The names below are imported lazily (`jepa_lightning.lazy`), each with its own module only.
"""

from jepa_lightning.lazy import lazy_exports

__all__ = [
    "APPS",
    "CATEGORIES",
    "INTERACT_CATEGORIES",
    "SET_DEFAULTS",
    "SPLITS",
    "UI_SETS",
    "VOCAB",
    "IntentCategory",
    "InteractCategory",
    "InteractPainter",
    "Panel",
    "Recording",
    "Screen",
    "ScreenPainter",
    "Script",
    "UIRecordingDataset",
    "UIRecordingsDataModule",
    "generate_ui_recordings",
    "read_ui_annotations",
    "record_intent",
    "record_interact",
    "split_categories",
    "uniform_indices",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "datamodule": ["UIRecordingsDataModule"],
    "interact": ["INTERACT_CATEGORIES", "InteractCategory", "InteractPainter", "Panel", "record_interact"],
    "reader": ["SPLITS", "UIRecordingDataset", "read_ui_annotations", "uniform_indices"],
    "recording": ["Recording"],
    "screens": ["APPS", "Screen", "ScreenPainter"],
    "scripts": ["CATEGORIES", "VOCAB", "IntentCategory", "Script"],
    "synthetic": ["SET_DEFAULTS", "UI_SETS", "generate_ui_recordings", "record_intent", "split_categories"],
})
