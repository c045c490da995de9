"""The web UI of the sensors app: pages, the history API and the page downloads (thin views over sensors.models)."""
