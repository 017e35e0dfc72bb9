"""Shared widgets of the studio (plots, charts, forms, pickers), used by more than one view."""
