"""The mini world: an offline, deterministic, CPU-scale world of rendered mannequin figures.

    fypbench world render --protocol fyp-1024 --sample <id> --out DIR
"""
