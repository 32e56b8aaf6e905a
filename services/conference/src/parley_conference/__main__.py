from parley_conference.app import main

main()
