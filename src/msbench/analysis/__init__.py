"""The statistics the report applies (stats): intervals, ratios, claims, power, all checked by simulation."""
