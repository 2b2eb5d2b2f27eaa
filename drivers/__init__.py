"""Sensor drivers: one package per sensor family, found through ``drivers.registry``."""
