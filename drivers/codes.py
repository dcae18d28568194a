"""Clinical codes: IEEE 11073-10101 (MDC) metrics and units, LOINC, status-component tables.

A 32-bit MDC code is ``partition * 65536 + term code`` (SCADA = 2, DIM = 4, INFRA = 8,
PHD_DM = 128). FHIR system for MDC: ``urn:iso:std:iso:11073:10101`` (decimal code); LOINC:
``http://loinc.org``. Source: reference device-formats.md §7 (``[V]`` verified there); the ones
marked ``[M]`` here are to be double-checked in RTMMS before go-live (reference §8.11).
"""

from __future__ import annotations

from typing import Final

MDC_SYSTEM: Final = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM: Final = "http://loinc.org"
ASN1_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"

PART_OBJ: Final = 1
PART_SCADA: Final = 2
PART_DIM: Final = 4
PART_INFRA: Final = 8
PART_PHD_DM: Final = 128


def mdc(partition: int, term: int) -> int:
    """The 32-bit MDC code of a term code in a partition."""
    return partition * 65536 + term


# -- Metrics (partition SCADA) ------------------------------------------------------------------
MDC_MASS_BODY_ACTUAL: Final = 188736  # weight
MDC_LEN_BODY_ACTUAL: Final = 188740  # height
MDC_BODY_FAT: Final = 188748
MDC_RATIO_MASS_BODY_LEN_SQ: Final = 188752  # BMI
MDC_MASS_BODY_FAT_FREE: Final = 188756  # term 57684
MDC_MASS_BODY_SOFT_LEAN: Final = 188760  # term 57688
MDC_BODY_WATER: Final = 188764  # term 57692 (mass of body water)
MDC_BASAL_METABOLISM: Final = 188768  # term 57696 [M: 11073-10420, not in 20601 tables]
MDC_BODY_MUSCLE: Final = 188772  # term 57700, muscle percentage [M]
MDC_MASS_BODY_MUSCLE: Final = 188776  # term 57704 [M]
MDC_BODY_ELECTRICAL_IMPEDANCE: Final = 188780  # term 57708 [M]

MDC_PRESS_BLD_NONINV: Final = 150020  # BP panel (compound)
MDC_PRESS_BLD_NONINV_SYS: Final = 150021
MDC_PRESS_BLD_NONINV_DIA: Final = 150022
MDC_PRESS_BLD_NONINV_MEAN: Final = 150023
MDC_PULS_RATE_NON_INV: Final = 149546
MDC_PRESS_CUFF: Final = 150300  # term 19228: cuff pressure during inflation (ICP, not clinical)
MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS: Final = 8410608

MDC_PULS_OXIM_SAT_O2: Final = 150456
MDC_PULS_OXIM_PULS_RATE: Final = 149530
MDC_PULS_OXIM_PERF_REL: Final = 150448  # PLX Pulse Amplitude Index [M]
MDC_SAT_O2_QUAL: Final = 150320  # Nonin quality value (PHD IG example)
MDC_PULS_OXIM_DEV_STATUS: Final = 150604
MDC_MODALITY_FAST: Final = 150580
MDC_MODALITY_SLOW: Final = 150584  # [M: one header shares term 19512 with PULS_OXIM_PULS_CHAR]
MDC_MODALITY_SPOT: Final = 150588

MDC_TEMP_BODY: Final = 150364
MDC_TEMP_TYMP: Final = 150392
MDC_TEMP_RECT: Final = 188420
MDC_TEMP_ORAL: Final = 188424
MDC_TEMP_EAR: Final = 188428
MDC_TEMP_FINGER: Final = 188432  # term 57360 [M]
MDC_TEMP_TOE: Final = 188448  # term 57376 (11073-10408 header; reference §7 said 188436 [M])
MDC_TEMP_AXILLA: Final = 188452
MDC_TEMP_GIT: Final = 188456

MDC_CONC_GLU_GEN: Final = 160020
MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD: Final = 160184
MDC_CONC_GLU_CAPILLARY_PLASMA: Final = 160188
MDC_CONC_GLU_VENOUS_WHOLEBLOOD: Final = 160192
MDC_CONC_GLU_VENOUS_PLASMA: Final = 160196
MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD: Final = 160200
MDC_CONC_GLU_ARTERIAL_PLASMA: Final = 160204
MDC_CONC_GLU_CONTROL: Final = 160208
MDC_CONC_GLU_ISF: Final = 160212
MDC_CONC_GLU_UNDETERMINED_PLASMA: Final = 160368
MDC_GLU_METER_DEV_STATUS: Final = 8417752

MDC_ECG_HEART_RATE: Final = 147842
MDC_ATTR_VAL_BATT_CHARGE: Final = 67996

# -- Device specialisations (PhdDevice.specialization) -------------------------------------------
MDC_DEV_SPEC_PROFILE_PULS_OXIM: Final = 528388
MDC_DEV_SPEC_PROFILE_BP: Final = 528391
MDC_DEV_SPEC_PROFILE_TEMP: Final = 528392
MDC_DEV_SPEC_PROFILE_SCALE: Final = 528399
MDC_DEV_SPEC_PROFILE_GLUCOSE: Final = 528401
MDC_DEV_SPEC_PROFILE_BCA: Final = 528404

# -- Units (partition DIM) ---------------------------------------------------------------------
MDC_DIM_PERCENT: Final = 262688
MDC_DIM_X_M: Final = 263424
MDC_DIM_CENTI_M: Final = 263441
MDC_DIM_INCH: Final = 263520
MDC_DIM_KILO_G: Final = 263875
MDC_DIM_LB: Final = 263904
MDC_DIM_KG_PER_M_SQ: Final = 264096
MDC_DIM_MILLI_G_PER_DL: Final = 264274
MDC_DIM_BEAT_PER_MIN: Final = 264864
MDC_DIM_KILO_PASCAL: Final = 265987
MDC_DIM_MMHG: Final = 266016
MDC_DIM_KILO_JOULES: Final = 266115  # JOULES 3968 + kilo prefix 3 (computed)
MDC_DIM_OHM: Final = 266432  # term 4288
MDC_DIM_FAHR: Final = 266560  # [M: one test file uses 268224]
MDC_DIM_MILLI_MOLE_PER_L: Final = 266866
MDC_DIM_DEGC: Final = 268192
#: kg/L (the GATT glucose unit) has no code in the 10101 tables we could verify: 0 = "no MDC unit".
#: It only ever appears as an ``Observation.original`` unit.
MDC_DIM_KG_PER_L: Final = 0
MDC_DIM_MOLE_PER_L: Final = 266848  # term 4704 = MILLI_MOLE_PER_L 4722 - milli prefix 18 [computed]

# -- UCUM units --------------------------------------------------------------------------------
UCUM_KG: Final = "kg"
UCUM_LB: Final = "[lb_av]"
UCUM_M: Final = "m"
UCUM_IN: Final = "[in_i]"
UCUM_BMI: Final = "kg/m2"
UCUM_PERCENT: Final = "%"
UCUM_MMHG: Final = "mm[Hg]"
UCUM_KPA: Final = "kPa"
UCUM_PER_MIN: Final = "/min"
UCUM_CEL: Final = "Cel"
UCUM_DEGF: Final = "[degF]"
UCUM_MG_DL: Final = "mg/dL"
UCUM_MMOL_L: Final = "mmol/L"
UCUM_KG_L: Final = "kg/L"
UCUM_MOL_L: Final = "mol/L"
UCUM_KJ: Final = "kJ"
UCUM_OHM: Final = "Ohm"

#: UCUM unit -> MDC unit code (the one place they are paired).
MDC_UNIT: Final[dict[str, int]] = {
    UCUM_KG: MDC_DIM_KILO_G,
    UCUM_LB: MDC_DIM_LB,
    UCUM_M: MDC_DIM_X_M,
    UCUM_IN: MDC_DIM_INCH,
    UCUM_BMI: MDC_DIM_KG_PER_M_SQ,
    UCUM_PERCENT: MDC_DIM_PERCENT,
    UCUM_MMHG: MDC_DIM_MMHG,
    UCUM_KPA: MDC_DIM_KILO_PASCAL,
    UCUM_PER_MIN: MDC_DIM_BEAT_PER_MIN,
    UCUM_CEL: MDC_DIM_DEGC,
    UCUM_DEGF: MDC_DIM_FAHR,
    UCUM_MG_DL: MDC_DIM_MILLI_G_PER_DL,
    UCUM_MMOL_L: MDC_DIM_MILLI_MOLE_PER_L,
    UCUM_KG_L: MDC_DIM_KG_PER_L,
    UCUM_MOL_L: MDC_DIM_MOLE_PER_L,
    UCUM_KJ: MDC_DIM_KILO_JOULES,
    UCUM_OHM: MDC_DIM_OHM,
}

# -- LOINC -------------------------------------------------------------------------------------
LOINC_BODY_WEIGHT: Final = "29463-7"
LOINC_BODY_HEIGHT: Final = "8302-2"
LOINC_BMI: Final = "39156-5"
LOINC_BODY_FAT: Final = "41982-0"  # [M]
LOINC_BP_PANEL: Final = "85354-9"
LOINC_SYSTOLIC: Final = "8480-6"
LOINC_DIASTOLIC: Final = "8462-4"
LOINC_MAP: Final = "8478-0"
LOINC_HEART_RATE: Final = "8867-4"
LOINC_SPO2: Final = "59408-5"
LOINC_SPO2_ARTERIAL: Final = "2708-6"  # FHIR vital-signs profile wants both SpO2 codes
LOINC_BODY_TEMP: Final = "8310-5"
LOINC_GLUCOSE_MASS: Final = "2339-0"
LOINC_GLUCOSE_MOLES: Final = "15074-8"
LOINC_GLUCOSE_CAPILLARY_MASS: Final = "41653-7"  # [M]
LOINC_GLUCOSE_CAPILLARY_MOLES: Final = "14743-9"  # [M]

#: LOINC codings of a metric (empty: none assigned).
LOINC: Final[dict[int, tuple[str, ...]]] = {
    MDC_MASS_BODY_ACTUAL: (LOINC_BODY_WEIGHT,),
    MDC_LEN_BODY_ACTUAL: (LOINC_BODY_HEIGHT,),
    MDC_RATIO_MASS_BODY_LEN_SQ: (LOINC_BMI,),
    MDC_BODY_FAT: (LOINC_BODY_FAT,),
    MDC_PRESS_BLD_NONINV: (LOINC_BP_PANEL,),
    MDC_PRESS_BLD_NONINV_SYS: (LOINC_SYSTOLIC,),
    MDC_PRESS_BLD_NONINV_DIA: (LOINC_DIASTOLIC,),
    MDC_PRESS_BLD_NONINV_MEAN: (LOINC_MAP,),
    MDC_PULS_RATE_NON_INV: (LOINC_HEART_RATE,),
    MDC_PULS_OXIM_SAT_O2: (LOINC_SPO2, LOINC_SPO2_ARTERIAL),
    MDC_PULS_OXIM_PULS_RATE: (LOINC_HEART_RATE,),
    MDC_ECG_HEART_RATE: (LOINC_HEART_RATE,),
    MDC_TEMP_BODY: (LOINC_BODY_TEMP,),
    MDC_TEMP_TYMP: (LOINC_BODY_TEMP,),
    MDC_TEMP_RECT: (LOINC_BODY_TEMP,),
    MDC_TEMP_ORAL: (LOINC_BODY_TEMP,),
    MDC_TEMP_EAR: (LOINC_BODY_TEMP,),
    MDC_TEMP_FINGER: (LOINC_BODY_TEMP,),
    MDC_TEMP_TOE: (LOINC_BODY_TEMP,),
    MDC_TEMP_AXILLA: (LOINC_BODY_TEMP,),
    MDC_TEMP_GIT: (LOINC_BODY_TEMP,),
}

#: Glucose has no LOINC per MDC code: the code follows the unit (mass or substance concentration).
LOINC_GLUCOSE_BY_UNIT: Final[dict[str, tuple[str, ...]]] = {
    UCUM_MG_DL: (LOINC_GLUCOSE_MASS,),
    UCUM_MMOL_L: (LOINC_GLUCOSE_MOLES,),
}


def loinc(metric: int) -> tuple[str, ...]:
    """The LOINC codes of an MDC metric (``()`` when the metric has none)."""
    return LOINC.get(metric, ())


# -- Status bit fields: flag name -> ASN1ToHL7 component index (``<MDC>.<index>``) ---------------
#: BP Measurement Status flag names (as decoders emit them) -> component of 8410608.
BP_STATUS_COMPONENTS: Final[dict[str, int]] = {
    "body-movement": 0,
    "cuff-too-loose": 1,
    "irregular-pulse": 2,
    "pulse-over-range": 3,  # GATT pulse-rate range = 1
    "pulse-under-range": 4,  # GATT pulse-rate range = 2
    "improper-position": 5,
}

#: PLX Device and Sensor Status: flag name -> (GATT bit, MDC_PULS_OXIM_DEV_STATUS component).
#: 11073-10404 numbers the same flags in reverse (150604.0 = sensor-disconnected).
PLX_DEVICE_STATUS: Final[dict[str, tuple[int, int]]] = {
    name: (bit, 15 - bit)
    for bit, name in enumerate(
        (
            "extended-display-update-ongoing",
            "equipment-malfunction",
            "signal-processing-irregularity",
            "inadequate-signal",
            "poor-signal",
            "low-perfusion",
            "erratic-signal",
            "nonpulsatile-signal",
            "questionable-pulse",
            "signal-analysis-ongoing",
            "sensor-interference",
            "sensor-unconnected-to-user",
            "unknown-sensor-connected",
            "sensor-displaced",
            "sensor-malfunctioning",
            "sensor-disconnected",
        )
    )
}

#: PLX Measurement Status: flag name -> GATT bit (b0-4 RFU).
PLX_MEASUREMENT_STATUS: Final[dict[str, int]] = {
    "measurement-ongoing": 5,
    "early-estimated-data": 6,
    "validated-data": 7,
    "fully-qualified-data": 8,
    "data-from-measurement-storage": 9,
    "data-for-demonstration": 10,
    "data-for-testing": 11,
    "calibration-ongoing": 12,
    "measurement-unavailable": 13,
    "questionable-measurement-detected": 14,
    "invalid-measurement-detected": 15,
}

#: Health Thermometer Temperature Type (GATT value) -> (name, MDC site code).
TEMPERATURE_TYPES: Final[dict[int, tuple[str, int]]] = {
    1: ("armpit", MDC_TEMP_AXILLA),
    2: ("body", MDC_TEMP_BODY),
    3: ("ear", MDC_TEMP_EAR),
    4: ("finger", MDC_TEMP_FINGER),
    5: ("gastro-intestinal-tract", MDC_TEMP_GIT),
    6: ("mouth", MDC_TEMP_ORAL),
    7: ("rectum", MDC_TEMP_RECT),
    8: ("toe", MDC_TEMP_TOE),
    9: ("tympanum", MDC_TEMP_TYMP),
}
