"""Serial devices behind pseudo-terminals (pyserial opens :attr:`PtyDevice.port`)."""

from simulators.serial.contec import ContecCms50d
from simulators.serial.nonin import NoninSerial
from simulators.serial.pty import PtyDevice

__all__ = ["ContecCms50d", "NoninSerial", "PtyDevice"]
