"""Energy: metering what greenmachine's commands spend (``meter``), turning it into kWh, gCO2eq and the training
energy a run avoided (``accounting``), and the EC-NAS training-energy surrogate (``surrogate``).

Why a package of its own: greenmachine exists to make architecture search cheaper in energy, so every command that
probes networks states in joules what it used and how that was measured, beside what training the same
architectures would have cost.
"""
