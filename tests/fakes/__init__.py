"""Stand-ins for vendor libraries (amdsmi, pynvml) so meters can be tested without hardware.

Load them by file path (see tests/test_meters.py) and inject into sys.modules under the real
module name; they mimic the real function names and return shapes.
"""
