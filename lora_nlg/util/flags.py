"""Flag checks shared by the train and beam CLIs of both trees."""
import re

from lora_nlg.util.errors import NLGError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")  # --device values; each tree checks that the device exists


class DeviceError(NLGError):
    """A --device this machine cannot run on (a one-line user error)."""
