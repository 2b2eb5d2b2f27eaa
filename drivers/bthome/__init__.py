"""BTHome v2 sensors over Bluetooth Low Energy: advertisements, decoded with bthome-ble."""
