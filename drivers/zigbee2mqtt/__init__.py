"""Zigbee sensors through Zigbee2MQTT: its messages on the home's local MQTT broker."""
