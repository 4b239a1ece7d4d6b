"""Measuring a GPU (`simcore profile`) and fitting its efficiency profile (`simcore calibrate`)."""
