"""Data-quality gating (reference §2.6): which readings may feed physiological rules.

The flag names are the strings the drivers put on readings; ``tests/alerting/test_gating.py``
proves every name below is one that a module of :mod:`drivers` emits, so a renamed driver flag
cannot silently turn a gate off.
"""

from __future__ import annotations

from typing import Final

from drivers import codes
from gateway.alerting.model import Gate, Observation

# -- blood pressure measurement status (BLS): exclude, ask for a repeat --
BODY_MOVEMENT: Final = "body-movement"
CUFF_TOO_LOOSE: Final = "cuff-too-loose"
IMPROPER_POSITION: Final = "improper-position"
IRREGULAR_PULSE: Final = "irregular-pulse"
# -- pulse oximeter measurement status (PLXS) --
INVALID_MEASUREMENT: Final = "invalid-measurement-detected"
QUESTIONABLE_MEASUREMENT: Final = "questionable-measurement-detected"
EARLY_ESTIMATE: Final = "early-estimated-data"
CALIBRATION_ONGOING: Final = "calibration-ongoing"
MEASUREMENT_ONGOING: Final = "measurement-ongoing"
MEASUREMENT_UNAVAILABLE: Final = "measurement-unavailable"
DATA_FOR_TESTING: Final = "data-for-testing"
DATA_FOR_DEMONSTRATION: Final = "data-for-demonstration"
# -- pulse oximeter device and sensor status / Nonin status --
LOW_PERFUSION: Final = "low-perfusion"
MARGINAL_PERFUSION: Final = "marginal-perfusion"
POOR_SIGNAL: Final = "poor-signal"
INADEQUATE_SIGNAL: Final = "inadequate-signal"
ERRATIC_SIGNAL: Final = "erratic-signal"
NONPULSATILE_SIGNAL: Final = "nonpulsatile-signal"
QUESTIONABLE_PULSE: Final = "questionable-pulse"
SENSOR_DISPLACED: Final = "sensor-displaced"
SENSOR_DISCONNECTED: Final = "sensor-disconnected"
SENSOR_UNCONNECTED: Final = "sensor-unconnected-to-user"
EQUIPMENT_MALFUNCTION: Final = "equipment-malfunction"
OUT_OF_TRACK: Final = "out-of-track"
SENSOR_DISCONNECT: Final = "sensor-disconnect"
# -- glucose (GLS sensor status annunciation, sample type) --
CONTROL_SOLUTION: Final = "control-solution"
STRIP_INSERTION_ERROR: Final = "strip-insertion-error"
STRIP_TYPE_INCORRECT: Final = "strip-type-incorrect"
SAMPLE_SIZE_INSUFFICIENT: Final = "sample-size-insufficient"
SENSOR_MALFUNCTION: Final = "sensor-malfunction"
TEMPERATURE_TOO_HIGH: Final = "temperature-too-high"
TEMPERATURE_TOO_LOW: Final = "temperature-too-low"
READ_INTERRUPTED: Final = "read-interrupted"
GENERAL_DEVICE_FAULT: Final = "general-device-fault"
TIME_FAULT: Final = "time-fault"
RESULT_TOO_HIGH: Final = "result-too-high"  # meter "HI": G5
RESULT_TOO_LOW: Final = "result-too-low"  # meter "LO": G5

#: Never an observation, never an alert.
NEVER_FLAGS: Final = frozenset({DATA_FOR_TESTING, DATA_FOR_DEMONSTRATION, CONTROL_SOLUTION})
#: Stored, excluded, and an info item "repeat measurement" (reference §2.6, BP status rows).
REPEAT_FLAGS: Final = frozenset({BODY_MOVEMENT, CUFF_TOO_LOOSE, IMPROPER_POSITION})
#: Stored and excluded from physiological rules.
EXCLUDE_FLAGS: Final = frozenset({
    INVALID_MEASUREMENT, QUESTIONABLE_MEASUREMENT, EARLY_ESTIMATE, CALIBRATION_ONGOING,
    MEASUREMENT_ONGOING, MEASUREMENT_UNAVAILABLE, LOW_PERFUSION, MARGINAL_PERFUSION, POOR_SIGNAL,
    INADEQUATE_SIGNAL, ERRATIC_SIGNAL, NONPULSATILE_SIGNAL, QUESTIONABLE_PULSE, SENSOR_DISPLACED,
    SENSOR_DISCONNECTED, SENSOR_UNCONNECTED, EQUIPMENT_MALFUNCTION, OUT_OF_TRACK,
    SENSOR_DISCONNECT, STRIP_INSERTION_ERROR, STRIP_TYPE_INCORRECT, SAMPLE_SIZE_INSUFFICIENT,
    SENSOR_MALFUNCTION, TEMPERATURE_TOO_HIGH, TEMPERATURE_TOO_LOW, READ_INTERRUPTED,
    GENERAL_DEVICE_FAULT,
})  # fmt: skip
#: Evaluated, but capped at yellow (NICE NG136: cuffs may be inaccurate with an irregular pulse).
CAP_YELLOW_FLAGS: Final = frozenset({IRREGULAR_PULSE})
#: Excluded from window (delta) rules but still evaluated by single-reading thresholds (§5.1).
NO_WINDOW_FLAGS: Final = frozenset({TIME_FAULT})

#: Every flag name the engine interprets.
ALL_GATING_FLAGS: Final = (
    NEVER_FLAGS | REPEAT_FLAGS | EXCLUDE_FLAGS | CAP_YELLOW_FLAGS | NO_WINDOW_FLAGS
    | {RESULT_TOO_HIGH, RESULT_TOO_LOW}
)  # fmt: skip

#: Kinds of record that can be an observation (not intermediate cuff pressure or device state).
CLINICAL_KINDS: Final = frozenset({"spot", "continuous"})
#: Metrics that are never a patient observation.
NEVER_METRICS: Final = frozenset({codes.MDC_CONC_GLU_CONTROL})


def gate(obs: Observation) -> Gate:
    """The gating decision for one reading; order matters (never > beyond-range > repeat > ...)."""
    flags = frozenset(obs.flags)
    if flags & NEVER_FLAGS or obs.mdc in NEVER_METRICS or obs.kind not in CLINICAL_KINDS:
        return Gate.NEVER
    if RESULT_TOO_HIGH in flags:
        return Gate.ABOVE_RANGE
    if RESULT_TOO_LOW in flags:
        return Gate.BELOW_RANGE
    if flags & REPEAT_FLAGS:
        return Gate.REPEAT
    if flags & EXCLUDE_FLAGS or obs.special is not None or obs.value is None:
        return Gate.EXCLUDED
    return Gate.VALID
