"""Networks timm does not provide as-is: the PP-ShiTuV2 recognition and detection models."""
