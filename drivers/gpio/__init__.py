"""Sensors on the Raspberry Pi's own pins (PIR, reed contacts, a help button), a status
LED and a buzzer, through gpiozero."""
