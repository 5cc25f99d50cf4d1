"""Shipped resources: models, presets, icons."""
from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent
MODELS_DIR = RESOURCES_DIR / "models"
PRESETS_DIR = RESOURCES_DIR / "presets"
ICONS_DIR = RESOURCES_DIR / "icons"
