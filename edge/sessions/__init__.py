"""Device sessions, one module per procedure.

* :mod:`edge.sessions.ble` connects to an allow-listed BLE device, discovers it and picks one of:
  :mod:`~edge.sessions.spot` (spot-check devices: BP, scale, thermometer, PLX spot-check, A&D
  upload-on-connect), :mod:`~edge.sessions.continuous` (PLX continuous, vendor oximetry streams),
  :mod:`~edge.sessions.glucose` (stored records fetched with RACP);
* :mod:`edge.sessions.serial`: USB-serial / SPP devices on a port path, reconnecting when unplugged.

All of them feed :class:`edge.sessions.common.RecordSink`, which commits to the outbox inside the
notify handler.
"""
