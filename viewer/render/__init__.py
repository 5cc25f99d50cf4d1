"""VTK adapters that subscribe to model events. The only layer that imports VTK."""
