from cascade.cli.app import main

main()
