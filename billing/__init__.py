"""Tariffs, pricing, charge detail records and invoices."""
