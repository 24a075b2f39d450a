"""Flag checks shared by the train and beam CLIs of both trees."""
import re

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")  # --device values; each tree checks that the device exists
