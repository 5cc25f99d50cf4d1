"""Casebook viewer: headless core, VTK renderers and the Qt application."""
import logging

logging.getLogger("casebook").addHandler(logging.NullHandler())
