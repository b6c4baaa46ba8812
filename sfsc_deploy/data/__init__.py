"""Image data: reading, preprocessing and (later) datasets."""
