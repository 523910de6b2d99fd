"""The demo's Content Creator app, copied into `$CCOPS_HOME/demo/app/` by `ccops demo up`.

Run from that directory as `python main.py --scheduled`; nothing in ccops imports these modules.
"""
