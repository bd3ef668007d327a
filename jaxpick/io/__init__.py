"""File input and output: images (MRC, TIFF, PNG/JPEG) and particle coordinates.

Nothing in this package imports JAX, so file handling stays fast to import and easy to test.
"""
