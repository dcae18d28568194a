"""The telehub edge agent: runs on the patient's home hub."""
