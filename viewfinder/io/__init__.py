"""Read any supported input (path, folder, URL, bytes, array, PIL image) into RGB images."""
from .image import DecodedImage, decode_image, full_image_loader, max_image_pixels
from .sources import IMAGE_EXTENSIONS, InputItem, iter_inputs

__all__ = [
    "DecodedImage",
    "IMAGE_EXTENSIONS",
    "InputItem",
    "decode_image",
    "full_image_loader",
    "iter_inputs",
    "max_image_pixels",
]
