"""The BLE seam: a small transport interface with a bleak adapter and a simulator behind it."""

from edge.ble.transport import Advertisement, BleLink, BleTransport, NotifyHandler

__all__ = ["Advertisement", "BleLink", "BleTransport", "NotifyHandler"]
