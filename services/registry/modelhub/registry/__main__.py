from modelhub.registry.main import main

main()
