from parley_gateway.app import main

main()
