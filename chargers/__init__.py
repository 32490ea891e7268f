"""The OCPP central system: sites, chargers, sessions, meter samples and the frame journal."""
