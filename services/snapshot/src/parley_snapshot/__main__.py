from parley_snapshot.app import main

main()
