from imageq.producers.cli.app import main

main()
