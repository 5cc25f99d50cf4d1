"""The Qt application: layout-only views, controllers, workers. The only layer that imports Qt."""
