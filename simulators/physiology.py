"""Deterministic vital-sign generators per patient profile.

Every value is a pure function of ``(seed, profile, stream, index)``: reading ``n`` of a patient is
the same whichever order a test asks for it, and a test can recompute what a device sent. Values
come out as :class:`~decimal.Decimal` at the resolution the real devices send: integer mmHg and
bpm, integer SpO2 %, PAI with one decimal, temperature with one decimal (A&D UT-201BLE), weight in
steps of the scale's resolution written with the 0.005 kg unit's three decimals (as the weight
decoder returns it), glucose in integer mg/dL.

Profiles:

* ``NORMAL`` - healthy adult, nothing alerts.
* ``HYPOXIC_COPD`` - SpO2 around 92 % with desaturation dips to 85-88 % for 15 s of every minute,
  the first starting at second 5; spot-checks alternate between 88-89 % and 91-93 %.
* ``HYPERTENSIVE_CRISIS`` - systolic 182-198 mmHg, diastolic 112-124 mmHg from the first reading.
* ``HEART_FAILURE`` - fluid retention: +0.8 kg per weighing (one a day), ~2.4 kg in three days.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from decimal import Decimal

WEIGHT_RESOLUTION = Decimal("0.1")  # kg (A&D UC-352BLE captures); sent as uint16 x 0.005 kg
_KG = Decimal("0.001")  # the decoder's representation (three decimals of the 0.005 kg unit)


class Profile(enum.StrEnum):
    NORMAL = "normal"
    HYPOXIC_COPD = "hypoxic-copd"
    HYPERTENSIVE_CRISIS = "hypertensive-crisis"
    HEART_FAILURE = "heart-failure"


@dataclass(frozen=True, slots=True)
class BloodPressureValues:
    systolic: Decimal  # mmHg, integer
    diastolic: Decimal
    mean: Decimal  # MAP as the cuff reports it: dia + 0.45 (sys - dia), rounded
    pulse_rate: Decimal  # bpm, integer


@dataclass(frozen=True, slots=True)
class OximetryValues:
    spo2: Decimal  # %, integer
    pulse_rate: Decimal  # bpm, integer
    pai: Decimal  # pulse amplitude index %, one decimal


@dataclass(frozen=True, slots=True)
class Physiology:
    """One patient's body. ``n`` is a reading ordinal; ``t`` a second since monitoring started."""

    profile: Profile
    seed: int

    def _rng(self, stream: str, n: int) -> random.Random:
        return random.Random(f"{self.seed}/{self.profile}/{stream}/{n}")

    # -- spot measurements --------------------------------------------------------------------
    def weight_kg(self, n: int) -> Decimal:
        r = self._rng("weight", n)
        base = {
            Profile.NORMAL: 72.4,
            Profile.HYPOXIC_COPD: 64.8,
            Profile.HYPERTENSIVE_CRISIS: 91.2,
            Profile.HEART_FAILURE: 81.0,
        }[self.profile]
        gain = 0.8 * n if self.profile is Profile.HEART_FAILURE else 0.0
        kg = Decimal(str(base + gain + r.uniform(-0.25, 0.25)))
        steps = (kg / WEIGHT_RESOLUTION).to_integral_value()
        return (steps * WEIGHT_RESOLUTION).quantize(_KG)

    def blood_pressure(self, n: int) -> BloodPressureValues:
        r = self._rng("bp", n)
        sys_lo, sys_hi, dia_lo, dia_hi, pr_lo, pr_hi = {
            Profile.NORMAL: (116, 132, 70, 84, 60, 78),
            Profile.HYPOXIC_COPD: (124, 142, 74, 88, 86, 102),
            Profile.HYPERTENSIVE_CRISIS: (182, 198, 112, 124, 78, 96),
            Profile.HEART_FAILURE: (104, 122, 64, 78, 70, 92),
        }[self.profile]
        systolic = r.randint(sys_lo, sys_hi)
        diastolic = r.randint(dia_lo, dia_hi)
        # Oscillometric MAP as A&D cuffs report it (captures: 125/80 -> 102, 134/77 -> 100).
        mean = round(diastolic + (systolic - diastolic) * 0.45)
        return BloodPressureValues(
            Decimal(systolic), Decimal(diastolic), Decimal(mean), Decimal(r.randint(pr_lo, pr_hi))
        )

    def temperature_c(self, n: int) -> Decimal:
        r = self._rng("temp", n)
        lo, hi = (368, 379) if self.profile is Profile.HYPOXIC_COPD else (362, 372)
        return Decimal(r.randint(lo, hi)).scaleb(-1)

    def glucose_mg_dl(self, n: int) -> Decimal:
        r = self._rng("glucose", n)
        return Decimal(r.randint(84, 142))

    def spot_oximetry(self, n: int) -> OximetryValues:
        """A spot-check (finger clip, rested): COPD alternates hypoxic and borderline values."""
        r = self._rng("spot-oxi", n)
        if self.profile is Profile.HYPOXIC_COPD:
            spo2 = r.randint(88, 89) if n % 2 == 0 else r.randint(91, 93)
            pr = r.randint(88, 104)
        else:
            spo2, pr = r.randint(95, 99), r.randint(60, 80)
        return OximetryValues(Decimal(spo2), Decimal(pr), Decimal(r.randint(10, 60)).scaleb(-1))

    # -- continuous ---------------------------------------------------------------------------
    def oximetry(self, t: int) -> OximetryValues:
        """Second ``t`` of a continuous recording."""
        r = self._rng("oxi", t)
        slow = math.sin(2 * math.pi * t / 300)  # a 5-minute drift in pulse rate
        if self.profile is Profile.HYPOXIC_COPD:
            dipping = 5 <= t % 60 < 20
            spo2 = r.randint(85, 88) if dipping else r.randint(91, 93)
            pr = round(96 + 6 * slow + (6 if dipping else 0)) + r.randint(-2, 2)
        else:
            spo2 = r.randint(96, 99)
            base = 88 if self.profile is Profile.HEART_FAILURE else 70
            pr = round(base + 5 * slow) + r.randint(-2, 2)
        pai = Decimal(r.randint(15, 55)).scaleb(-1)
        return OximetryValues(Decimal(spo2), Decimal(pr), pai)

    def pleth(self, i: int, rate_hz: float) -> tuple[int, bool]:
        """Plethysmogram sample ``i`` of a stream at ``rate_hz`` (7 bit) and whether a beat starts.

        A pulse shape (fast upstroke, slow decay) at the current pulse rate of second ``i / rate``.
        """
        t = i / rate_hz
        bpm = float(self.oximetry(int(t)).pulse_rate)
        beats = t * bpm / 60.0
        phase = beats % 1.0
        beat = int(beats) != int((i - 1) / rate_hz * bpm / 60.0) if i > 0 else True
        shape = phase / 0.15 if phase < 0.15 else math.exp(-(phase - 0.15) * 3.0)
        return round(10 + 90 * shape), beat

    def heart_rate(self, t: int) -> int:
        r = self._rng("hr", t)
        base = {
            Profile.NORMAL: 68,
            Profile.HYPOXIC_COPD: 96,
            Profile.HYPERTENSIVE_CRISIS: 86,
            Profile.HEART_FAILURE: 90,
        }[self.profile]
        return base + round(4 * math.sin(2 * math.pi * t / 120)) + r.randint(-2, 2)

    def rr_intervals(self, t: int) -> tuple[int, ...]:
        """RR intervals (1/1024 s) of the beats in second ``t`` (one or two beats)."""
        bpm = self.heart_rate(t)
        rr = round(60 * 1024 / bpm)
        return (rr,) if bpm < 90 else (rr, rr + self._rng("rr", t).randint(-8, 8))
