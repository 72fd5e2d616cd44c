from imageq.cli.main import main

main()
