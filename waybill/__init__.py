"""Waybill: the operations core of a marketplace, built in PostgreSQL. Python here is glue."""
