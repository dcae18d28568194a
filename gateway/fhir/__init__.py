"""FHIR R4 for telehub: the HL7 Personal Health Device IG mapping of stored readings
(:mod:`gateway.fhir.mapping`), the read-only API at ``/fhir`` (:mod:`gateway.fhir.api`), the one
place patient data is read for it (:mod:`gateway.fhir.access`) and the push channel to an
external FHIR server (:mod:`gateway.fhir.push`). See docs/fhir.md."""


class FhirError(Exception):
    """Base of the errors of this package."""
