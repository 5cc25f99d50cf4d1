"""Headless domain layer: DICOM I/O, the Volume model, services. No Qt, no VTK."""
