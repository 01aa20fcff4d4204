from jepa_lightning.cli import main

main()
