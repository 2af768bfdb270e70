from refalign.cli import main

main()
